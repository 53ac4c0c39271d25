from clm.cli import main

main()
