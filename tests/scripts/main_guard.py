import argparse
import sys

import torch
from torch import nn


def main(args: argparse.Namespace) -> int:
    net = nn.Sequential(nn.Linear(args.features, 8), nn.ReLU(), nn.Linear(8, 4)).eval()
    quantized = torch.ao.quantization.quantize_dynamic(net, {nn.Linear})
    for name, model in [("fp32", net), ("int8", quantized)]:
        print(name, model(torch.randn(args.batch, args.features)).shape)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--batch", type=int, default=2)
    sys.exit(main(parser.parse_args()))
