"""Choosing auxiliary tasks: GradTS-trial, GradTS-fg and the comparison of selectors (§1, §8).

- :mod:`.ledger`: the run ledger (run keys, train-or-load under the key's lock, persistence)
  and the evaluation plan;
- :mod:`.stats`: seed means, the paired bootstrap, the noise verdict (pure);
- :mod:`.records`: the result records and their one codec;
- :mod:`.trial`: GradTS-trial, the greedy procedure and its stop rule;
- :mod:`.cuts` and :mod:`.fg`: GradTS-fg's instance taus, cuts, stored selections, procedure.
"""
