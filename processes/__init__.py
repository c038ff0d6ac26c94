"""OGC API – Processes (Part 1: Core, JSON) over the service's queues: processes, jobs, status, results."""
