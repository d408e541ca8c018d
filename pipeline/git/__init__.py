"""The committer's part: changes on the commits queue -> one commit each -> one push a batch (the only dulwich users).

`drain.py` receives what is ready across issues, `commits.py` decides and builds one commit per change and replays a
rejected push on the new tip, `store.py` is the bare cache repository and the push, `tree.py` splices tree entries.
"""
