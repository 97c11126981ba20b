from heedls.server.cli import main

# The guard matters: a multiprocessing child started with "spawn" re-imports __main__.
if __name__ == "__main__":
    main()
