"""Lottery tickets by iterative magnitude pruning (LTH, LTR): IMP, controls, instability, aggregation, reports."""
