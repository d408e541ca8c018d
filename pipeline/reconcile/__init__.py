"""Reconcile: read Jira's REST API and feed the changes JSync lacks through the events queue, as webhooks would.

`reconciler.py` runs a job in steps (its phases), `jobs.py` keeps job records in the store, `jira.py` is the REST
client, `rebuild.py` turns an issue's document and changelog back into the webhooks Jira would have sent.
"""
