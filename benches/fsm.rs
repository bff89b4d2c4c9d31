//! Machine throughput: transitions per second, and journal replay (handle + compare) per second.
//! Run: `cargo bench --bench fsm`; results are recorded in docs/PERFORMANCE.md.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic

use std::hint::black_box;

use clusterrebootd::fsm::record::Record;
use clusterrebootd::fsm::{Event, FsmConfig, Gates, Input, Machine, answer};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Inputs of `cycles` complete reboot cycles (detect → … → reboot → recover), answered with
/// success, as a journal would hold them.
fn cycle_inputs(cycles: usize) -> Vec<Record> {
    let mut m = Machine::new();
    let mut now = 1_800_000_000_000u64;
    let mut records = Vec::new();
    let config = FsmConfig {
        min_reboot_interval_sec: 60,
        ..FsmConfig::default()
    };
    let feed = |m: &mut Machine, now: u64, event: Event, records: &mut Vec<Record>| {
        let input = Input {
            now,
            jitter: 7,
            event,
        };
        let step = m.handle(&input);
        records.push(Record::new("boot", &input, &step));
        step
    };
    for c in 0..cycles {
        let boot = format!("boot-{c}");
        feed(
            &mut m,
            now,
            Event::Started {
                boot_id: boot,
                config: config.clone(),
            },
            &mut records,
        );
        let mut step = feed(
            &mut m,
            now,
            Event::Tick {
                gates: Gates::default(),
            },
            &mut records,
        );
        loop {
            now += 1_000;
            let Some(ev) = step.effects.iter().find_map(answer::success) else {
                break;
            };
            step = feed(&mut m, now, ev, &mut records);
            if step.to == clusterrebootd::fsm::StateName::Idle
                && step.from == clusterrebootd::fsm::StateName::Recovering
            {
                break;
            }
            if step
                .effects
                .iter()
                .any(|e| matches!(e, clusterrebootd::fsm::Effect::ExecuteReboot { .. }))
            {
                // Reboot command "returns", the process restarts on the next boot id.
                now += 1_000;
                let id = m.state().pending().unwrap_or(0);
                feed(
                    &mut m,
                    now,
                    Event::RebootCommandFinished {
                        id,
                        result: clusterrebootd::fsm::StepResult::Ok,
                    },
                    &mut records,
                );
                step = feed(
                    &mut m,
                    now,
                    Event::Started {
                        boot_id: format!("boot-{c}-after"),
                        config: config.clone(),
                    },
                    &mut records,
                );
            }
        }
    }
    records
}

fn bench(c: &mut Criterion) {
    let records = cycle_inputs(200);
    let inputs: Vec<Input> = records.iter().map(Record::input).collect();

    let mut g = c.benchmark_group("fsm");
    g.throughput(Throughput::Elements(inputs.len() as u64));
    g.bench_function("transitions", |b| {
        b.iter(|| {
            let mut m = Machine::new();
            for i in &inputs {
                black_box(m.handle(i));
            }
        })
    });
    g.bench_function("replay_verify", |b| {
        b.iter(|| {
            let mut m = Machine::new();
            let mut same = 0usize;
            for r in &records {
                let step = m.handle(&r.input());
                same += usize::from(r.same_decision(&step));
            }
            assert_eq!(same, records.len());
            black_box(same)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
