"""JSync's domain: parsing webhooks, snapshots in S3, commits in git, and the queues between them."""
