"""Running the jobs an agent took.

``runner`` (one task per job, the slots, cancels, the drain at shutdown, orphans
recorded), ``executor`` (one process: no shell, its own process group, killed at
its timeout), ``policy`` (what a job may do here), ``output`` (capped capture of
stdout and stderr), ``live`` (output chunks while the job runs), ``stops`` (each
held job's stop signal), ``orphans`` (process groups a killed agent left running).
"""
