from gen_status.main import main

main()
