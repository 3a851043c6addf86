"""The ACI tests import their builders from ``acikit`` (beside this file; --import-mode=importlib)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
