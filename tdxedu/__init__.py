"""tdxedu: run how Linux KVM drives Intel TDX.

Layers (dependencies point downwards only, see the Layout section of README.md):
widgets -> viz -> lessons -> sim/cost -> kvm -> tdx.
"""

__version__ = "0.1.0"
