"""Multi-seed sweeps: `run` trains recipes x seeds and files each run's summary;
`report` builds Table 1 and Figure 2 from those summaries."""
