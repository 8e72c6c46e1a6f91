module magent2.dev/bench/loadgen

go 1.22
