"""ticketlab: find, test, compress and protect lottery tickets."""

__version__ = "0.1.0"
