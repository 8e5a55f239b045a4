import sys
from pathlib import Path

# Make tests/fakes.py importable as `fakes` under --import-mode=importlib.
sys.path.insert(0, str(Path(__file__).parent))
