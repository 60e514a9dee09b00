package codec

// iso87Class is the character class ISO 8583:1987 gives each data element
// (index = field id; 0 and 1, the MTI and the bitmap, are not data
// elements). It is the default for a dialect field without a "class" key,
// and a dialect whose class differs from it must say why in the field's
// "note" (parseField).
//
// "a or n" (fields 49–51, currency codes: "USD" or "840") is recorded as
// an, the narrowest of our classes that admits both. Neither jPOS nor
// moov-io checks classes; Wireshark's ISO 8583 dissector has its own table
// that differs from this one on fields 36, 40, 44–51, 91–95 (see the
// dialect files' notes where that matters for what it shows).
var iso87Class = func() (t [fieldIDMax + 1]charClass) {
	set := func(cl charClass, from, to int) {
		for id := from; id <= to; id++ {
			t[id] = cl
		}
	}
	set(classN, 0, 27) // MTI, then fields 2–27 (1 is the bitmap, set below)
	t[1] = classB
	set(classXN, 28, 31)
	set(classN, 32, 33)
	t[34] = classNS
	t[35] = classZ
	t[36] = classN
	set(classAN, 37, 40)
	set(classANS, 41, 43)
	set(classAN, 44, 51)
	t[52] = classB
	t[53] = classN
	t[54] = classAN
	set(classANS, 55, 63)
	set(classB, 64, 65)
	set(classN, 66, 90)
	set(classAN, 91, 95)
	t[96] = classB
	t[97] = classXN
	t[98] = classANS
	set(classN, 99, 100)
	set(classANS, 101, 127)
	t[128] = classB
	return t
}()

// className is the dialect-file name of a class ("n", "ans", …).
func className(cl charClass) string {
	for name, c := range classNames {
		if c == cl {
			return name
		}
	}
	return "?"
}
