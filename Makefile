# Conveniences over bootstrap.py (which needs nothing but python3).
.PHONY: bench quick test perf train figures
bench:
	python3 bootstrap.py bench
quick:
	python3 bootstrap.py bench --quick --out results-quick
test:
	python3 bootstrap.py test
perf:
	mkdir -p results && python3 bootstrap.py test benchmarks --benchmark-enable --benchmark-json=results/perf.json
train:
	.venv/bin/python -m bench train
figures:
	.venv/bin/python -m bench figures --results results
