"""wsfss-bench. Importing it pins the math libraries' CPU code paths (bench/core/pinning.py) before
torch or numpy run anything, so that CPU fits give the same weights on machines of one kind."""
from bench.core.pinning import apply_pins

apply_pins()
