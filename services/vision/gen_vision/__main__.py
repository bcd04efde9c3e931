from gen_vision.main import main

main()
