"""`cohortflow demo`: the example files of deploy/demo/ applied, users simulated, all shown live.

`files` reads and checks segments.yaml and campaigns.yaml (`campaign_form` turns the
readable campaign form into the proto), `apply` creates or updates them idempotently,
`snapshot` reads the figures from the services, `view` draws them, `run` drives it all.
"""
