"""`prmedic run`: one job inline, without a server or a queue (docs/architecture.md, "Folders").

`engine` (settings → services → one job through `app.runtime.PIPELINES` → `RunResult`),
`reference` (what to run, from the command line's words; pure), `result` (conclusion and exit
status; pure), `settings`, `github` (a token or the App; every write recorded, or in a dry run
answered as GitHub would: `answers`), `commands` (a command without a comment: its feedback on the
terminal), `display` (progress on the terminal), `report` (what was, or would have been, posted),
`cli` (the `run` subcommand).
"""
