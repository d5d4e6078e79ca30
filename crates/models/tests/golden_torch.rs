//! PyTorch golden test: state_dicts saved by torch with safetensors load unchanged into the
//! `recurrent` model and give torch's logits.
//!
//! The fixtures in `tests/fixtures/` and the expected logits below were produced once, with
//! torch 2.15.0 and safetensors 0.8.0 on CPU, by this script (run from `crates/models/tests`); it is not a test dependency:
//!
// # Generates crates/models/tests/fixtures/*.safetensors and prints the expected logits.
// # Run from crates/models/tests: python3 gen_golden.py (torch, safetensors).
// import torch, torch.nn as nn
// from safetensors.torch import save_file
//
// ids = torch.tensor([[1, 2, 3, 4, 5], [6, 7, 8, 0, 0], [9, 10, 0, 0, 0], [11, 0, 0, 0, 0]])
// lens = torch.tensor([5, 3, 2, 1])
//
// class M(nn.Module):
//     def __init__(s, kind, layers, bi, **kw):
//         super().__init__()
//         s.embedding = nn.Embedding(12, 4)
//         s.rnn = {'rnn': nn.RNN, 'lstm': nn.LSTM, 'gru': nn.GRU}[kind](
//             4, 3, num_layers=layers, bidirectional=bi, batch_first=True, **kw)
//         s.fc = nn.Linear(3 * (2 if bi else 1), 5)
//         s.bi = bi
//     def forward(s, x, lens, padded=False):
//         e = s.embedding(x)
//         if padded:
//             _, h = s.rnn(e)
//         else:
//             _, h = s.rnn(nn.utils.rnn.pack_padded_sequence(e, lens, batch_first=True, enforce_sorted=False))
//         if isinstance(h, tuple): h = h[0]
//         h = torch.cat([h[-2], h[-1]], 1) if s.bi else h[-1]
//         return s.fc(h)
//
// cases = [  # name, cell, layers, bidirectional, extra kwargs, padded
//     ('lstm', 'lstm', 1, False, {}, False),
//     ('gru', 'gru', 1, False, {}, False),
//     ('rnn_tanh', 'rnn', 1, False, {}, False),
//     ('rnn_relu', 'rnn', 1, False, {'nonlinearity': 'relu'}, False),
//     ('lstm_bi2', 'lstm', 2, True, {}, False),
//     ('gru_last_padded', 'gru', 1, False, {}, True),
// ]
// for i, (name, kind, layers, bi, kw, padded) in enumerate(cases):
//     torch.manual_seed(100 + i)
//     m = M(kind, layers, bi, **kw).eval()
//     save_file({k: v.contiguous() for k, v in m.state_dict().items()}, f'fixtures/{name}.safetensors')
//     with torch.no_grad():
//         y = m(ids, lens, padded)
//     rows = ', '.join('[' + ', '.join(f'{v:.8e}' for v in r) + ']' for r in y.tolist())
//     print(f'("{name}", [{rows}]),')

mod common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::{assert_close, build_model, registry};
use rnnlab_core::{checkpoint, seeded, Batch};

/// (fixture, torch's logits for the batch in the script).
const CASES: [(&str, [[f64; 5]; 4]); 6] = [
    (
        "lstm",
        [
            [
                2.11322740e-01,
                -3.79835963e-01,
                5.43151915e-01,
                -4.46089447e-01,
                -4.51150954e-01,
            ],
            [
                1.96984604e-01,
                -3.99661630e-01,
                5.51918030e-01,
                -4.07247692e-01,
                -5.03863871e-01,
            ],
            [
                1.96796000e-01,
                -4.02010441e-01,
                5.36295593e-01,
                -3.99611413e-01,
                -4.98074830e-01,
            ],
            [
                9.27101299e-02,
                -6.31543279e-01,
                5.69813609e-01,
                -1.36750519e-01,
                -5.76629519e-01,
            ],
        ],
    ),
    (
        "gru",
        [
            [
                2.41784483e-01,
                -9.06697810e-02,
                7.12733865e-02,
                9.84145999e-01,
                -4.26906675e-01,
            ],
            [
                3.40546727e-01,
                1.48174912e-01,
                2.40382358e-01,
                4.92370933e-01,
                -1.30429387e-01,
            ],
            [
                4.48009998e-01,
                7.70179927e-02,
                3.73783886e-01,
                5.18152177e-01,
                -2.09968716e-01,
            ],
            [
                6.12499833e-01,
                -3.46576214e-01,
                5.06666660e-01,
                4.15737987e-01,
                -4.59965140e-01,
            ],
        ],
    ),
    (
        "rnn_tanh",
        [
            [
                -4.33950037e-01,
                -8.74255180e-01,
                3.36225241e-01,
                -3.62195373e-01,
                -6.25132322e-01,
            ],
            [
                -4.29920405e-01,
                -5.46653688e-01,
                7.65957296e-01,
                1.68885469e-01,
                -4.34046358e-01,
            ],
            [
                -3.99066031e-01,
                -2.72936523e-02,
                4.13519442e-01,
                4.62826222e-01,
                -5.07771373e-02,
            ],
            [
                -3.25537741e-01,
                1.98135644e-01,
                4.64477658e-01,
                6.39503956e-01,
                9.19672251e-02,
            ],
        ],
    ),
    (
        "rnn_relu",
        [
            [
                1.17064908e-01,
                -2.61455148e-01,
                -4.79164958e-01,
                2.29354024e-01,
                -4.46067512e-01,
            ],
            [
                -2.25313585e-02,
                -1.84770525e-01,
                -5.28959572e-01,
                3.34595621e-01,
                -4.39586967e-01,
            ],
            [
                1.87454358e-01,
                -2.80760825e-01,
                -4.86390620e-01,
                2.08881393e-01,
                -4.29191530e-01,
            ],
            [
                1.04435205e-01,
                -9.37065482e-03,
                -8.93068194e-01,
                6.51566744e-01,
                -1.90430135e-01,
            ],
        ],
    ),
    (
        "lstm_bi2",
        [
            [
                7.22198486e-02,
                3.94528925e-01,
                -2.27379903e-01,
                -3.24952245e-01,
                7.99866766e-02,
            ],
            [
                4.21618596e-02,
                4.01073813e-01,
                -2.49420062e-01,
                -3.04716200e-01,
                1.14720449e-01,
            ],
            [
                1.11658596e-01,
                4.21622336e-01,
                -2.36414164e-01,
                -3.62769485e-01,
                1.08443543e-01,
            ],
            [
                1.32905498e-01,
                4.01357144e-01,
                -2.23868936e-01,
                -3.34649354e-01,
                1.55387759e-01,
            ],
        ],
    ),
    (
        "gru_last_padded",
        [
            [
                7.69889355e-02,
                -2.22256079e-01,
                4.20567513e-01,
                6.98608756e-01,
                9.01084304e-01,
            ],
            [
                3.44449878e-01,
                1.46775544e-02,
                -1.39614910e-01,
                4.09210503e-01,
                4.39214349e-01,
            ],
            [
                3.43134522e-01,
                2.69321501e-02,
                -6.15664423e-02,
                4.69639361e-01,
                5.26663661e-01,
            ],
            [
                3.53763372e-01,
                2.60775089e-02,
                -6.31942898e-02,
                4.71299618e-01,
                5.16795874e-01,
            ],
        ],
    ),
];

fn config(name: &str) -> &'static str {
    match name {
        "lstm" => "cell = { type = \"lstm\", hidden = 3 }",
        "gru" => "cell = { type = \"gru\", hidden = 3 }",
        "rnn_tanh" => "cell = { type = \"rnn\", hidden = 3 }",
        "rnn_relu" => "cell = { type = \"rnn\", hidden = 3, nonlinearity = \"relu\" }",
        "lstm_bi2" => "cell = { type = \"lstm\", hidden = 3, layers = 2, bidirectional = true }",
        "gru_last_padded" => "cell = { type = \"gru\", hidden = 3 }\npooling = \"last_padded\"",
        other => panic!("no config for {other}"),
    }
}

#[test]
fn torch_state_dicts_give_torch_logits() {
    let r = registry();
    let ids: Vec<u32> = vec![1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 9, 10, 0, 0, 0, 11, 0, 0, 0, 0];
    let batch = Batch {
        ids: Tensor::from_vec(ids, (4, 5), &Device::Cpu).unwrap(),
        lengths: vec![5, 3, 2, 1],
        labels: Tensor::new(&[0u32, 1, 2, 3], &Device::Cpu).unwrap(),
    };
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for (name, expected) in CASES {
        let src = format!("type = \"recurrent\"\nembedding_dim = 4\n{}", config(name));
        let model = build_model(&r, &src, 12, 5, DType::F32, 0).unwrap();
        let map = checkpoint::load(&dir.join(format!("{name}.safetensors"))).unwrap();
        model.params().load_map(&map).unwrap();
        let logits = model.forward(&batch, false, &mut seeded(0)).unwrap();
        let expected = Tensor::new(&expected, &Device::Cpu).unwrap();
        assert_close(&logits, &expected, 0.0, 1e-5, name);
    }
}
