"""Speculation length policies (see ``policies.speculation``)."""
