"""lanchat: serverless terminal chat and file sharing for one local network."""

__version__ = "0.1.0"
