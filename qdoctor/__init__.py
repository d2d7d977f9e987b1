"""qdoctor: a doctor for slow or broken quantized PyTorch models.

Importing the package must stay cheap: `qdoctor --help` and `--version` never import torch.
"""

__version__ = "0.1.0"
