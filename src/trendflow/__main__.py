from trendflow.cli import main

main()
