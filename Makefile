# The front door: run, test, e2e, bench, lint, certs, preview.
CARGO ?= cargo
BIN := target/release/kafka-listener-injector
DEV_CERTS := certs/dev

.PHONY: run test e2e bench soak lint certs preview build clean profile fuzz attacks install image image-test

build:
	$(CARGO) build --release --locked

## Dev certificates for 127.0.0.1/localhost, made once (git-ignored).
$(DEV_CERTS)/tls.crt:
	$(CARGO) run --quiet --locked -- certs --service kafka-listener-injector --namespace kafka-listener-injector \
		--dns localhost --ip 127.0.0.1 --out $(DEV_CERTS)

certs: $(DEV_CERTS)/tls.crt

## Serve on 127.0.0.1:8443 (admin on 127.0.0.1:9090) with the dev certificates.
run: certs
	$(CARGO) run --quiet --locked -- serve --listen 127.0.0.1:8443 --admin-listen 127.0.0.1:9090 \
		--tls-cert $(DEV_CERTS)/tls.crt --tls-key $(DEV_CERTS)/tls.key \
		--domain $${KLI_DOMAIN:-kafka.example.com}

test:
	$(CARGO) test --locked

## Install the binary, the kubectl plugin name, shell completions and the man page under PREFIX.
PREFIX ?= $(HOME)/.local
install: build
	install -D -m 0755 $(BIN) $(PREFIX)/bin/kafka-listener-injector
	ln -sf kafka-listener-injector $(PREFIX)/bin/kubectl-kafka_listeners
	mkdir -p $(PREFIX)/share/bash-completion/completions $(PREFIX)/share/zsh/site-functions \
		$(PREFIX)/share/fish/vendor_completions.d $(PREFIX)/share/man/man1
	$(BIN) completions bash > $(PREFIX)/share/bash-completion/completions/kafka-listener-injector
	$(BIN) completions zsh > $(PREFIX)/share/zsh/site-functions/_kafka-listener-injector
	$(BIN) completions fish > $(PREFIX)/share/fish/vendor_completions.d/kafka-listener-injector.fish
	$(BIN) man > $(PREFIX)/share/man/man1/kafka-listener-injector.1

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

## Preview the example Kafka cluster.
preview:
	$(CARGO) run --quiet --locked -- preview -f manifests/examples/kafka/kafka.yaml

## The control plane and real Kafka (tests/e2e), then the image built and run as a runtime would.
e2e:
	tests/e2e/run.sh
	$(MAKE) image-test

## The OCI image under target/image (no Docker daemon): static binary, uid 65532, SBOM.
image:
	tests/image/build.sh

image-test: image
	tests/image/test.sh

bench:
	bench/run.sh

soak:
	bench/soak.sh

## Peak memory of the release binary under the hostile-client attacks (RSS sampling).
attacks: build
	mkdir -p target/attack-certs
	$(BIN) certs --service x --namespace y --dns localhost --ip 127.0.0.1 --out target/attack-certs >/dev/null
	python3 bench/attacks.py $(BIN) target/attack-certs

clean:
	$(CARGO) clean
	rm -rf $(DEV_CERTS)

## Profile the core with callgrind on a real review (instruction counts, repeatable).
profile:
	$(CARGO) build --release --locked --example profile_review
	valgrind --tool=callgrind --callgrind-out-file=target/callgrind.out \
		target/release/examples/profile_review bench/fixtures/review-20k.json 2000
	callgrind_annotate --inclusive=yes target/callgrind.out | head -60

## Fuzz the request handler (cargo-fuzz; RUSTC_BOOTSTRAP lets the stable toolchain take its flags).
FUZZ_SECONDS ?= 300
fuzz:
	command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/review && cp tests/fixtures/*.json bench/fixtures/*.json fuzz/corpus/review/
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run review -- -max_total_time=$(FUZZ_SECONDS) -max_len=65536
