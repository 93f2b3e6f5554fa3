"""SuperTickets (docs/methods.md, SuperTickets): an efficient architecture and its sparse ticket from one supernet training.

  config.py       SuperConfig: intervals, ρ, threshold, ablations, baselines, retraining
  shrink.py       FLOPs-weighted L1 on the depthwise BN scales; physical channel removal
  progressive.py  progressive global magnitude pruning with reactivation of dormant weights
  search.py       the two-in-one training loop
  jobs.py         the `supertickets` and `transfer` commands: seeds, baselines, tickets, results
  frontier.py     accuracy against effective cost, table and plot
"""
