from servesim.core.rng import RandomStreams


def test_same_seed_and_name_give_same_draws():
    a = RandomStreams(7).stream("arrivals").random(5)
    b = RandomStreams(7).stream("arrivals").random(5)
    assert (a == b).all()


def test_streams_are_independent_of_request_order():
    s1 = RandomStreams(7)
    x1 = s1.stream("x").random(3)
    s1.stream("y").random(3)
    s2 = RandomStreams(7)
    s2.stream("y").random(100)
    x2 = s2.stream("x").random(3)
    assert (x1 == x2).all()


def test_different_names_or_seeds_differ():
    assert (RandomStreams(1).stream("a").random(3) != RandomStreams(1).stream("b").random(3)).any()
    assert (RandomStreams(1).stream("a").random(3) != RandomStreams(2).stream("a").random(3)).any()
