"""tdxedu: run how Linux KVM drives Intel TDX.

Layers (dependencies point downwards only, see shared DESIGN.md):
widgets -> viz -> lessons -> sim/cost -> kvm -> tdx.
"""

__version__ = "0.1.0"
