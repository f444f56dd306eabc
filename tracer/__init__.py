"""tcptrace-explain: explain every TCP reset and abort on a Linux host."""

__version__ = "0.1.0"
