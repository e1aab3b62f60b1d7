"""prmedic as a GitHub Action (`action.yml`, `prmedic action`): the workflow's event → one job,
routed as the App routes a delivery and run inline by the engine of `prmedic run`
(`app/oneshot/`); outputs and a job summary for the workflow."""
