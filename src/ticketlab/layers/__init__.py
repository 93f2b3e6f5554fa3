"""Structured tickets: layer tickets (whole residual blocks removed at initialization), the filter tickets
they are compared with at matched cost, and accuracy under corruption and shift."""
