"""prmedic: reviews pull requests and repairs failing CI with Claude agents."""

__version__ = "0.1.0"
