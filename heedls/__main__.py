from heedls.server.cli import main

main()
