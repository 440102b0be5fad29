from experiments.synthetic.study import main

main()
