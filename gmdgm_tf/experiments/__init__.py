"""Multi-run experiments built on experiment.train_and_evaluate (table1: the paper's
Table 1 and Figure 2 over many seeds)."""
