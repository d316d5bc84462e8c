from edgeline.cli import console_main

console_main()
