"""The review feature: a pull request event → one review with inline comments, and a check run
(`pipeline.review_pipeline`)."""
