//! Regression: transforms that do arithmetic with parameters (tracked variables) must not leave
//! autograd history in their state. A moment or average that keeps its op history chains every
//! step's graph into the next and grows without bound (a real-task run with coupled decay, Adam
//! and EMA reached 24 GiB within one epoch before this was fixed).

use candle_core::{Device, Tensor, Var};
use rnnlab_core::{apply_updates, Chain, Grads, Link, Outcome, Params, StepContext, StepReport};
use rnnlab_optim::{adam::adam, ema::ema, swa::swa, weight_decay::weight_decay};

#[test]
fn chain_state_and_averages_carry_no_autograd_history() -> rnnlab_core::Result<()> {
    let d = Device::Cpu;
    let w = Var::from_tensor(&Tensor::new(&[[0.5f32, -1.0], [2.0, 0.25]], &d)?)?;
    let mut params = Params::new();
    params.insert("w", w.clone(), true)?;
    let mut chain = Chain::new(vec![
        Link::gradients(weight_decay(0.01, false)),
        Link::gradients(adam(0.01, 0.9, 0.999, 1e-8).with_weight_decay(0.01)),
        Link::weights(ema(0.9)),
        Link::weights(swa(1)),
    ]);
    chain.init(&params)?;
    for step in 0..3 {
        // Gradients from a real backward pass, as the trainer gets them.
        let loss = w.as_tensor().sqr()?.sum_all()?;
        let mut store = loss.backward()?;
        let mut grads = Grads::from_backward(&params, &mut store)?;
        let ctx = StepContext {
            step,
            epoch: 1,
            lr: 0.01,
            loss: 1.0,
        };
        let out = chain.apply(&mut grads, &params, &ctx, &mut StepReport::default())?;
        assert_eq!(out, Outcome::Update);
        for (name, g) in grads.iter() {
            assert!(
                !g.track_op(),
                "the update of `{name}` keeps autograd history"
            );
        }
        apply_updates(&params, &grads)?;
        chain.after_step(&params, &ctx)?;
    }
    for (k, t) in chain.state_dict()?.tensors {
        assert!(!t.track_op(), "state `{k}` keeps autograd history");
    }
    let avg = chain.averaged_params()?.expect("ema/swa keep averages");
    for (k, t) in avg {
        assert!(!t.track_op(), "average of `{k}` keeps autograd history");
    }
    Ok(())
}
