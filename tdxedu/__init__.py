"""tdxedu: run how Linux KVM drives Intel TDX.

Layers (dependencies point downwards only; `tests/test_layers.py` checks every import):
cli -> widgets -> viz -> lessons -> steps -> scenarios/mutants -> sim/cost -> kvm -> units
-> tdx -> trace.
"""

__version__ = "0.1.0"
