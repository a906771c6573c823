"""Office Gateway: keeps a small office working through power and internet outages."""

__version__ = "0.1.0"
