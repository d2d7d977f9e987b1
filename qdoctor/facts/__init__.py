"""Plain data shared by every layer of qdoctor (no torch): the Facts gathered once about a target, the kinds they
use, source locations and the one helper that finds the user's frame in a traceback.
"""

from qdoctor.facts.data import *  # noqa: F403 - the facts' public names, as `from qdoctor import facts as F` reads them
