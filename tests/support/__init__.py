"""What tests need besides tests: harnesses that start real processes in temporary directories and stop
them by PID, the helper servers they launch, sample objects and captured data (``fixtures/``)."""
