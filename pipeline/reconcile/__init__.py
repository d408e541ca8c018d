"""Reconcile: read Jira's REST API and feed the changes JSync lacks through the events queue, as webhooks would.

`step.py` takes a sync-queue message, `reconciler.py` runs the job's state machine through `phases.py` (pending,
search, census), `issues.py` compares each issue with what JSync holds, `feed.py` sends what it lacks, `failures.py`
tells Jira errors that end the step from those that end the job, `jobs.py` keeps job records in the store, `jira.py`
is the REST client, `rebuild.py` turns an issue's document and changelog back into the webhooks Jira would have sent.
"""
