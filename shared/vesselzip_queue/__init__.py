"""RQ glue both services use: connections, queues, enqueueing, the state a client
sees (read from RQ's own job), cancelling, maintenance, the models workers offer and
the job counters. The gateway and the workers import it; the domain package
(`vesselzip`) does not."""
