from gen_ingest.main import main

main()
