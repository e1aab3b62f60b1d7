"""The fix feature: a failing check on a pull request → a checked patch, delivered, and a check run
(`pipeline.fix_pipeline`; `pipeline.run_fix` for an explicit request such as `/fix`)."""
