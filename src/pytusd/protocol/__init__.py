"""Pure protocol rules: parsing request headers and deciding responses, with no I/O.

Everything here is testable without a socket or a store (the h11 way): functions take strings and
numbers and return values or raise :class:`~pytusd.protocol.errors.HTTPError`.
"""
