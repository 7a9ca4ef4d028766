"""`python -m convc ...`: the same command line as the `convc` script."""

from convc.cli import main

raise SystemExit(main())
