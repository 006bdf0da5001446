"""``tradectl``'s exit codes, one meaning each, for scripts that steer a session."""

OK = 0
REFUSED = 1  # the daemon answered and refused (the reason is on stderr)
USAGE = 2  # a usage error (click's own code: unknown option, missing argument)
UNREACHABLE = 3  # the daemon did not answer
NOT_FLAT = 4  # failsafe --wait: the sequence has not verified the venue flat within --timeout
BAD_SETTINGS = 78  # the settings cannot be read (as every process exits with them: EX_CONFIG)
