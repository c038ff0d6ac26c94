"""Change events and file-structure checks; jobs on ``event_q`` and ``fs_check_q``."""
