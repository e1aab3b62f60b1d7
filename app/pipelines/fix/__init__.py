"""The fix feature: a failing check on a pull request → a checked patch, delivered, and a check run
(`pipeline.fix_pipeline`); `pipeline.run_fix` also serves `/fix` and `/test` (a repair, a requested
change, or tests), with the request in `app.pipelines.fix_request`."""
