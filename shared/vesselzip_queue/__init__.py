"""RQ glue both services use: connections, queues, enqueueing, the state a client
sees, cancelling, reaping, and the job records in Redis. The gateway and the workers
import it; the domain package (`vesselzip`) does not."""
